"""Finding images, splitting them by patient, and feeding them through the preprocessing contract."""
