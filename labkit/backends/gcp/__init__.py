"""backends/gcp"""
