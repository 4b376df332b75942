"""The Symbiont runtime: agents defined in the Symbiont DSL, their executions and workflows."""
