"""Interoperability tests of eventbinder with apps built on other frameworks."""
