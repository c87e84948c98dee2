# Compiled build of http11.py (Cython pure-Python mode): the per-header loops with typed
# locals, and the check of a header value as a C loop over its bytes.

cimport cython


@cython.locals(c=cython.uchar)
cdef bint _bad_value(bytes value) except -1

@cython.locals(c=cython.uchar)
cdef bint _has_upper(bytes name) except -1

@cython.locals(out=list, good=set, same=bint)
cpdef list _checked(object headers, list parts)

@cython.locals(parts=list, checked=list, default=tuple, pair=tuple)
cpdef tuple start_head(object status, object headers, list defaults)
