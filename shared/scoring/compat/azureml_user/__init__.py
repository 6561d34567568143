"""Stand-in for PRS's ``azureml_user`` package (scoring processes only)."""
