"""State shared between gateway instances through Redis (stream logs, control messages).

Everything here degrades: when Redis goes away, each instance carries on with its in-process state.
"""
