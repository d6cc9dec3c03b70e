"""testbed.crash"""
