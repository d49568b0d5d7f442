"""Plugging into the hospital: DICOM intake (C-STORE, STOW-RS), a durable job queue, results to the PACS."""
