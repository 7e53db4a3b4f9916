"""Personal data: masked by default, revealed with a reason, erased after retention."""
