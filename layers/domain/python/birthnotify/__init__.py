"""Domain package shared by the Lambda functions: the upload contract, sharing agreements, routing."""
