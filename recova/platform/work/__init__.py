"""Case work: the case lifecycle, promises to pay, payment plans, settlements, disputes."""
