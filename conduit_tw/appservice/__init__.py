"""Application services (application-service-api): registrations, pushing, bridges."""
