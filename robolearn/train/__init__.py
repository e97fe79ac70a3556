"""robolearn.train"""
