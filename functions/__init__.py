"""Thin trigger adapters: decode the binding, call one ``shared`` function, map errors back."""
