"""Pydantic models whose JSON Schema needs adapting to AsyncAPI (Draft 7): a
discriminated union (OpenAPI's ``discriminator`` object), a tuple (``prefixItems``), an
enum shared with a dataclass.  Imported only when pydantic is installed."""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated, Literal

from pydantic import BaseModel, Field


class Color(enum.Enum):
    RED = "red"
    BLACK = "black"


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Pet(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    position: tuple[int, int]
    color: Color


@dataclasses.dataclass
class Basket:
    pet: Pet
    color: Color
