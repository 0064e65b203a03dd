"""Pruning: strategies are score functions; selection, scopes and schedules are shared."""
