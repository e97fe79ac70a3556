"""robolearn.datasets"""
