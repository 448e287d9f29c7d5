/* sessioncache--1.0--1.1.sql: the upgrade from 1.0 to 1.1.  A fresh install of 1.1
 * runs sessioncache--1.0.sql and then this script, as contrib modules do, so every
 * change made in 1.1 lives here only. */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION sessioncache UPDATE TO '1.1'" to load this file. \quit
