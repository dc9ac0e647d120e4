"""Widgets the pages share: forms generated from a parameter schema, labels and icons, and the plots."""
