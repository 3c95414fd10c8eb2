"""The CDK app of the birth-notifications system (one construct per concern under constructs/)."""
