"""Minimal stand-in for the parts of the Azure ML SDK that PRS entry scripts use (scoring processes only)."""
