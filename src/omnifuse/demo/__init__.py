"""omnifuse.demo: the main job — the built-in benchmark end to end."""
