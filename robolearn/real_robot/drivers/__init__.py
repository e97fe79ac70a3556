"""Robot drivers: one file per arm (see robolearn.real_robot.driver.DRIVERS)."""
