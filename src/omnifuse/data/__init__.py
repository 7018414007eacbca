"""omnifuse.data"""
