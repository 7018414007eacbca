"""omnifuse.modeling"""
