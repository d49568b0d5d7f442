"""Out-of-distribution scoring: feature statistics, the OOD film set and its report."""
