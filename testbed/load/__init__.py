"""testbed.load"""
