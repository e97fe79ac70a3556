"""robolearn.nn"""
