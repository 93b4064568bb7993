# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The paragraph walk of `curation.justext_fast.segment`, over libxml2's nodes in C.

It visits the tree in `lxml.etree.iterwalk(root, events=("start", "end", "comment"))` order
(the order `lxml.sax.saxify` gives jusText) and reads `.text` and `.tail` as lxml builds them
(the run of text nodes after a node's start or end, UTF-8 decoded), but without creating a
Python object per element: the text between two kept tags is gathered as bytes and decoded
once. Everything else (the tag table, the root's cleaning, what a paragraph keeps) is the
Python code's in `segment` and `tags`.
"""

from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcpy, strlen

cimport lxml.includes.etreepublic as cetree
from lxml.includes cimport tree
from lxml.includes.tree cimport xmlNode

from curation.justext_fast.tags import (
    BR, KEEP, KILL, LINK, PARAGRAPH, REMOVE, element_cleaning, tag_info,
)
from curation.justext_fast._text import normalised_length

cetree.import_lxml__etree()

cdef int _BR = BR, _KEEP = KEEP, _KILL = KILL, _LINK = LINK, _PARAGRAPH = PARAGRAPH, _REMOVE = REMOVE
cdef enum Event:
    START, END, COMMENT

#: lxml tag -> `tag_info`, keyed by the tag's UTF-8 name (and namespace); bounded below
cdef dict _TAG_INFO = {}
cdef Py_ssize_t _MAX_CACHED_TAGS = 4096


cdef struct TextBuffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef int _append(TextBuffer* buffer, const char* text) except -1:
    cdef Py_ssize_t length = strlen(text)
    cdef char* grown
    if buffer.size + length > buffer.capacity:
        grown = <char*>PyMem_Realloc(buffer.data, 2 * (buffer.size + length) + 64)
        if grown is NULL:
            raise MemoryError()
        buffer.data = grown
        buffer.capacity = 2 * (buffer.size + length) + 64
    memcpy(buffer.data + buffer.size, text, length)
    buffer.size += length
    return 0


cdef int _append_text_run(TextBuffer* buffer, xmlNode* c_node) except -1:
    """Append lxml's `.text` (from a first child) or `.tail` (from a next sibling): the
    consecutive text and CDATA nodes from `c_node` on, XInclude markers skipped, as lxml does."""
    while c_node is not NULL:
        if c_node.type == tree.XML_TEXT_NODE or c_node.type == tree.XML_CDATA_SECTION_NODE:
            if c_node.content is not NULL:
                _append(buffer, <const char*>c_node.content)
        elif c_node.type != tree.XML_XINCLUDE_START and c_node.type != tree.XML_XINCLUDE_END:
            break
        c_node = c_node.next
    return 0


cdef str _take_text(TextBuffer* buffer):
    """The pending text as one text node of the cleaned tree (None when empty or all whitespace,
    which jusText skips), and empty the buffer."""
    if buffer.size == 0:
        return None
    cdef str text = PyUnicode_DecodeUTF8(buffer.data, buffer.size, NULL)
    buffer.size = 0
    return None if text.isspace() else text


cdef inline bint _is_walked(xmlNode* c_node) noexcept:
    """Nodes iterwalk yields events for; libxml2's HTML parser makes processing instructions comments."""
    return (c_node.type == tree.XML_ELEMENT_NODE or c_node.type == tree.XML_COMMENT_NODE
            or c_node.type == tree.XML_PI_NODE)


cdef inline xmlNode* _next_walked(xmlNode* c_node) noexcept:
    while c_node is not NULL and not _is_walked(c_node):
        c_node = c_node.next
    return c_node


cdef tuple _info(xmlNode* c_node):
    cdef bytes key = <bytes><const char*>c_node.name
    if c_node.ns is not NULL and c_node.ns.href is not NULL:
        key = b"{" + <bytes><const char*>c_node.ns.href + b"}" + key
    info = _TAG_INFO.get(key)
    if info is None:
        info = tag_info(key.decode("utf-8"))
        if len(_TAG_INFO) >= _MAX_CACHED_TAGS:
            _TAG_INFO.clear()
        _TAG_INFO[key] = info
    return <tuple>info


def walk(cetree._Element root):
    """(raw texts, link characters, in a select, is a heading) of each paragraph of `root`, in
    document order; see `curation.justext_fast.segment.segment`."""
    cdef xmlNode* top = root._c_node
    cdef xmlNode* c_node = top
    cdef xmlNode* child
    cdef Event event = START
    cdef TextBuffer pending = TextBuffer(NULL, 0, 0)
    cdef int kind, select, heading, cleaning
    cdef int open_select = 0, open_heading = 0, open_objects = 0
    cdef Py_ssize_t links = 0
    cdef bint para_select = False, para_heading = False, in_link = False, br = False
    cdef list nodes = []
    cdef list raw_texts = [], link_chars = [], in_select = [], is_heading = []
    cdef str text
    try:
        while True:
            if event == COMMENT:  # killed; its tail joins the pending text
                _append_text_run(&pending, c_node.next)
            else:
                kind, select, heading, cleaning = _info(c_node)
                if cleaning != _KEEP:
                    if cleaning != _KILL and cleaning != _REMOVE:
                        cleaning = element_cleaning(cetree.elementFactory(root._doc, c_node), cleaning,
                                                    open_objects > 0)
                    if cleaning == _KILL:
                        if event == START:  # skip the subtree: its end comes next
                            event = END
                            continue
                        _append_text_run(&pending, c_node.next)
                    elif cleaning == _REMOVE:
                        if c_node.ns is NULL and <bytes><const char*>c_node.name == b"object":
                            open_objects += 1 if event == START else -1
                        _append_text_run(&pending, c_node.children if event == START else c_node.next)
                if cleaning == _KEEP:
                    text = _take_text(&pending)
                    if text is not None:
                        nodes.append(text)
                        if in_link:
                            links += normalised_length(text)
                        br = False
                    if event == START:
                        open_select += select
                        open_heading += heading
                        if kind == _PARAGRAPH or (kind == _BR and br):
                            if nodes:
                                _close(nodes, links, para_select, para_heading, raw_texts, link_chars, in_select,
                                       is_heading)
                                nodes, links = [], 0
                            para_select, para_heading = open_select > 0, open_heading > 0
                        else:
                            br = kind == _BR
                            if br:
                                nodes.append(" ")
                            elif kind == _LINK:
                                in_link = True
                        _append_text_run(&pending, c_node.children)
                    else:
                        open_select -= select
                        open_heading -= heading
                        if kind == _PARAGRAPH:
                            if nodes:
                                _close(nodes, links, para_select, para_heading, raw_texts, link_chars, in_select,
                                       is_heading)
                                nodes, links = [], 0
                            para_select, para_heading = open_select > 0, open_heading > 0
                        elif kind == _LINK:
                            in_link = False
                        _append_text_run(&pending, c_node.next)
                if event == START:  # into the first child, or straight to the end of a leaf
                    child = _next_walked(c_node.children)
                    if child is NULL:
                        event = END
                    else:
                        c_node = child
                        event = START if child.type == tree.XML_ELEMENT_NODE else COMMENT
                    continue
            if c_node == top:
                break
            child = _next_walked(c_node.next)
            if child is NULL:
                c_node = c_node.parent
                event = END
            else:
                c_node = child
                event = START if child.type == tree.XML_ELEMENT_NODE else COMMENT
        text = _take_text(&pending)
        if text is not None:
            nodes.append(text)
            if in_link:
                links += normalised_length(text)
        _close(nodes, links, para_select, para_heading, raw_texts, link_chars, in_select, is_heading)
    finally:
        PyMem_Free(pending.data)
    return raw_texts, link_chars, in_select, is_heading


cdef int _close(list nodes, Py_ssize_t links, bint para_select, bint para_heading, list raw_texts,
                list link_chars, list in_select, list is_heading) except -1:
    """End the current paragraph. jusText keeps it when its text is not empty (`Paragraph`
    has a `__len__`, so `if self.paragraph` tests the text): a paragraph of `<br>` spaces is lost."""
    cdef str raw_text = "".join(nodes).strip()
    if raw_text:
        raw_texts.append(raw_text)
        link_chars.append(links)
        in_select.append(para_select)
        is_heading.append(para_heading)
    return 0
