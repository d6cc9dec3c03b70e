"""testbed.board"""
