//! Unit tests against SDK mocks (aws-smithy-mocks): the calls moto does not implement.
