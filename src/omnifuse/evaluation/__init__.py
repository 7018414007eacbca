"""omnifuse.evaluation"""
