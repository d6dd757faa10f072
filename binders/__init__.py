"""Binder plugins shipped with eventbinder, one package per broker."""
