"""omnifuse.serving"""
