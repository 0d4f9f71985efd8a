"""ncpdp package."""
