"""testbed.image"""
