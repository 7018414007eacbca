"""omnifuse.interop"""
