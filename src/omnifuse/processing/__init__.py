"""omnifuse.processing"""
