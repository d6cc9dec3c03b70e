"""testbed.service"""
