"""The agent loop, providers, tools and memory: no routes of their own (sessions and channels use them)."""

from app.core.areas import Area

AREA = Area(name="agent")
