"""LungCT Viewer: sliding-window CNN detection of lung tumours on chest CT.

Research use only -- not for clinical diagnosis.
"""

__version__ = "0.1.0"

RESEARCH_NOTICE = "Research use only \u2014 not for clinical diagnosis"
