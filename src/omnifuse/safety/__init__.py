"""Bounds and checks on what users hand omnifuse: prompt and record sizes, output folders, YAML, limits files."""
