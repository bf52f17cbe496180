"""backends/ssh"""
