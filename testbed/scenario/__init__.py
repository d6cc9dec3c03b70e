"""testbed.scenario"""
