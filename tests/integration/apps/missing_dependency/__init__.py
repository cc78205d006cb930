"""An app package that exists but cannot be imported: a module it imports needs a missing driver.

`osmium serve tests.integration.apps.missing_dependency.main:app` must show where (file and line).
"""
