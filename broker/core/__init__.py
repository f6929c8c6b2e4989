"""GA4GH Passport and visa logic: models, issuing, verification, conditions, identities."""
