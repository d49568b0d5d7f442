"""What a prediction can be rendered into: the heat-map overlay, DICOM SC and SR objects."""
