# mi -- one non-recursive GNU Makefile.
# Programs are every cmd/mi-*.c; the library is every libcommon/*.c and
# libcommon/*/*.c (a module of several files keeps them in a folder).

VERSION    = 0.1.0
PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
SHAREDIR  ?= $(PREFIX)/share/mi
MANDIR    ?= $(PREFIX)/share/man
DESTDIR   ?=

CC        ?= cc
PKG_CONFIG ?= pkg-config
BATS      ?= bats

WARN = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
       -Wmissing-prototypes -Wold-style-definition -Wpointer-arith \
       -Wwrite-strings -Wvla -Wformat=2 -fno-common
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Ilibcommon \
	-DMI_VERSION=\"$(VERSION)\" -DMI_SHAREDIR=\"$(SHAREDIR)\" \
	$(shell $(PKG_CONFIG) --cflags libpq libcurl libcrypto libpng libavformat libavcodec libavutil 2>/dev/null)
ifeq ($(DEVELOPER),1)
ALL_CFLAGS += -Werror
endif
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZE)
endif

JQ_LIBS ?= $(shell $(PKG_CONFIG) --libs libjq 2>/dev/null || echo -ljq)
# libavformat (audio and video facts) is needed only by the programs that
# probe stored files: --as-needed keeps the others from loading it.
AV_LIBS ?= $(shell $(PKG_CONFIG) --libs libavformat libavcodec libavutil 2>/dev/null || echo -lavformat -lavcodec -lavutil)
LIBS = -Wl,--as-needed \
       $(shell $(PKG_CONFIG) --libs libpq libcurl libcrypto libpng 2>/dev/null) \
       $(JQ_LIBS) $(AV_LIBS) -lmagic -larchive -lz -lm -lpthread

LIB_SRCS = $(sort $(wildcard libcommon/*.c libcommon/*/*.c))
LIB_OBJS = $(LIB_SRCS:.c=.o)
CMD_SRCS = $(sort $(wildcard cmd/mi-*.c))
PROGRAMS = $(patsubst cmd/%.c,bin/%,$(CMD_SRCS))
MANPAGES = $(sort $(wildcard man/*.[1-8]))
SHAREFILES = $(shell find share -type f 2>/dev/null | sort)
MIGRATIONS = $(sort $(wildcard migrations/*.sql))

all: $(PROGRAMS)

# The link line of the programs, for tests that build against the library
# (with the sanitizers' runtime under SANITIZE=...).
print-libs:
	@echo $(LDFLAGS) $(LIBS)

# Made afresh each time: ar would keep the objects of moved or removed
# sources, whose symbols would then clash with their new homes.
libcommon/libcommon.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJS)

libcommon/%.o: libcommon/%.c Makefile
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

cmd/%.o: cmd/%.c Makefile
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

bin/%: cmd/%.o libcommon/libcommon.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $< libcommon/libcommon.a $(LIBS)

-include $(LIB_OBJS:.o=.d) $(CMD_SRCS:.c=.d)

# The compiled-in share directory follows PREFIX: paths.o is rebuilt when
# SHAREDIR changes (make install PREFIX=... after a plain make).
SHAREDIR_STAMP := $(shell mkdir -p .build && \
	{ echo '$(SHAREDIR)' | cmp -s - .build/sharedir || \
	  echo '$(SHAREDIR)' > .build/sharedir; } && echo .build/sharedir)
libcommon/paths.o: $(SHAREDIR_STAMP)

# Every object and program is rebuilt when the compiler, CFLAGS, LDFLAGS
# or SANITIZE change (make SANITIZE=address after a plain make builds it
# all again; -Werror and the paths do not change the code).
BUILD_FLAGS = $(CC) | $(CFLAGS) | $(LDFLAGS) | $(SANITIZE)
ifneq ($(MAKECMDGOALS),print-libs)
FLAGS_STAMP := $(shell mkdir -p .build && \
	{ echo '$(BUILD_FLAGS)' | cmp -s - .build/flags || \
	  echo '$(BUILD_FLAGS)' > .build/flags; } && echo .build/flags)
$(LIB_OBJS) $(CMD_SRCS:.c=.o) $(PROGRAMS): $(FLAGS_STAMP)
endif

# Fuzzing with libFuzzer.  A target is test/fuzz/NAME.c (defining
# LLVMFuzzerTestOneInput) linked with the library sources listed in
# FUZZ_SRCS_NAME and the libraries in FUZZ_LIBS_NAME; its kept corpus is
# test/fuzz/corpus/NAME/ and its dictionary, if any, test/fuzz/NAME.dict.
# Adding a target: the .c file, its corpus directory, a FUZZ_SRCS_ line.
#   make fuzz                        every target, FUZZ_TIME s each (600)
#   make fuzz FUZZ_TARGETS=jwt FUZZ_TIME=60
# New inputs go to .build/fuzz/corpus/NAME/, crashes to .build/fuzz/;
# `make fuzz-merge` keeps those that add coverage in the kept corpus.
FUZZ_CC     ?= clang
FUZZ_TIME   ?= 600
FUZZ_CFLAGS ?= -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_ALL     = $(patsubst test/fuzz/%.c,%,$(sort $(wildcard test/fuzz/*.c)))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_BINS    = $(patsubst %,.build/fuzz/%,$(FUZZ_TARGETS))

FUZZ_SRCS_httpd_parse = libcommon/httpd_parse.c
FUZZ_SRCS_json_next = libcommon/json.c libcommon/err.c
FUZZ_LIBS_json_next = $(JQ_LIBS)
FUZZ_SRCS_jwt = libcommon/jwt.c libcommon/err.c
FUZZ_LIBS_jwt = -lcrypto
FUZZ_SRCS_zipread = libcommon/bundle/zipread.c libcommon/err.c
FUZZ_LIBS_zipread = -lz

.SECONDEXPANSION:
.build/fuzz/%: test/fuzz/%.c $$(FUZZ_SRCS_$$*) $$(wildcard libcommon/*.h libcommon/*/*.h) \
		Makefile
	@mkdir -p .build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -std=c11 -D_GNU_SOURCE -Ilibcommon \
		-DMI_VERSION=\"$(VERSION)\" -DMI_SHAREDIR=\"$(SHAREDIR)\" \
		-o $@ $< $(FUZZ_SRCS_$*) $(FUZZ_LIBS_$*)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	sh test/fuzz/run.sh $(FUZZ_TIME) $(FUZZ_TARGETS)

# Keeps the new inputs of the working corpora that add coverage.
fuzz-merge: fuzz-build
	for t in $(FUZZ_TARGETS); do \
		mkdir -p .build/fuzz/corpus/$$t test/fuzz/corpus/$$t && \
		.build/fuzz/$$t -merge=1 test/fuzz/corpus/$$t \
		    .build/fuzz/corpus/$$t || exit 1; \
	done

# The dependency step: installs what is missing (Debian packages, npm
# modules for the browser tests); does nothing when everything is present.
deps:
	sh test/deps.sh

check:
	sh test/deps.sh
	$(MAKE) all
	MI_BIN_DIR=$(CURDIR)/bin MI_SHAREDIR=$(CURDIR)/share \
	MI_MIGRATIONS_DIR=$(CURDIR)/migrations VALGRIND=$(VALGRIND) \
	SANITIZE=$(SANITIZE) sh test/run.sh $(TESTS)

# examples/demo.sh installs what is missing and builds by itself: it is
# also what a bare machine runs first, before make is installed.
demo:
	+sh examples/demo.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHAREDIR)/migrations \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7
	install -m 755 $(PROGRAMS) $(DESTDIR)$(BINDIR)
	install -m 644 $(MIGRATIONS) $(DESTDIR)$(SHAREDIR)/migrations
	for f in $(SHAREFILES); do \
		d=$$(dirname $${f#share/}); \
		install -d $(DESTDIR)$(SHAREDIR)/$$d && \
		install -m 644 $$f $(DESTDIR)$(SHAREDIR)/$$d || exit 1; \
	done
	for m in $(MANPAGES); do \
		s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s || exit 1; \
	done

uninstall:
	for p in $(PROGRAMS); do rm -f $(DESTDIR)$(BINDIR)/$${p#bin/}; done
	for m in $(MANPAGES); do \
		s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m#man/}; done
	rm -rf $(DESTDIR)$(SHAREDIR)

# The C follows style(9), which no formatter expresses (clang-format
# rewrote about 2,500 lines of it): the compiler's warnings (errors with
# DEVELOPER=1) and the man pages are what is checked.
lint:
	mandoc -Tlint -Wwarning $(MANPAGES)

clean:
	rm -rf bin .build libcommon/*.o libcommon/*.d libcommon/*/*.o \
		libcommon/*/*.d libcommon/libcommon.a cmd/*.o cmd/*.d

.PHONY: all check demo demo-stop deps fuzz fuzz-build fuzz-merge install uninstall lint clean
.SECONDARY: $(LIB_OBJS) $(CMD_SRCS:.c=.o)

demo-stop:
	sh examples/demo-stop.sh
