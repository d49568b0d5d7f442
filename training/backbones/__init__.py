"""The backbone factory and where pretrained weights come from."""
