"""robolearn.eval"""
