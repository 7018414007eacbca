"""omnifuse.training"""
