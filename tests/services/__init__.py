"""Tests of sinkd.services: the application services every entry point goes through."""
