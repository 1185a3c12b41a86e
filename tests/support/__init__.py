"""Shared test support: repository paths and seed data, the moto stack built from template.yaml,
flow helpers (images, events, stubs, spies) and in-memory fakes of the services' ports.

Import from here (`from tests.support.flows import upload`); never from a conftest module.
"""
