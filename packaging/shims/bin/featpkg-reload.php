<?php
/*
 * MikoPBX reload entry point featpkg calls back after it changed MikoPBX's
 * configuration (default --reload-cmd of the mikopbx target):
 *
 *     /usr/bin/php -f <moduleDir>/bin/featpkg-reload.php -- <what…>
 *
 * <what> are words among: dialplan manager cron modules pjsip. Each is done
 * with MikoPBX's own mechanism (the ones its WorkerModelsEvents reload actions
 * call), so MikoPBX regenerates the files from its database, custom files and
 * module hooks:
 *   dialplan  ExtensionsConf::reload()        (older releases: PBX::dialplanReload())
 *   manager   ManagerConf::reload()           (PBX::managerReload())
 *   cron      (new CronConf())->reStart()
 *   modules   (new ModulesConf())->generateConfig(): rewrites modules.conf with
 *             the module's generateModulesConf() hook, WITHOUT the restart
 *             ModulesConf::reload() does (featpkg loads the modules live)
 *   pjsip     SIPConf::reload()               (PBX::sipReload()); always last,
 *             because it restarts Asterisk when the network settings changed
 * Exit 0 when every one ran, 1 with the message on stderr when one failed,
 * 2 for a usage error.
 *
 *     /usr/bin/php -f featpkg-reload.php -- --would-restart pjsip
 *
 * prints "no", or "yes: <why>" when SIPConf::reload() would restart Asterisk
 * now (SIPConf::needAsteriskRestart(): the network settings changed since
 * Asterisk started), and changes nothing. featpkg asks before an endpoint
 * change and needs the admin's consent to restart.
 */

declare(strict_types=1);

const FEATPKG_RELOADS = ['dialplan', 'manager', 'cron', 'modules', 'pjsip'];

/**
 * Calls the first of $candidates ([class, static method]) that exists.
 *
 * @param array<int, array{0: string, 1: string}> $candidates
 * @return mixed
 */
function featpkg_call_first(string $what, array $candidates)
{
    foreach ($candidates as $candidate) {
        if (class_exists($candidate[0]) && is_callable($candidate)) {
            return call_user_func($candidate);
        }
    }
    throw new RuntimeException("no MikoPBX reload method for $what (tried "
        . implode(', ', array_map(static function (array $c): string {
            return $c[0] . '::' . $c[1];
        }, $candidates)) . ')');
}

function featpkg_reload(string $what): void
{
    switch ($what) {
        case 'dialplan':
            featpkg_call_first($what, [
                ['MikoPBX\Core\Asterisk\Configs\ExtensionsConf', 'reload'],
                ['MikoPBX\Core\System\PBX', 'dialplanReload'],
            ]);
            return;
        case 'pjsip':
            featpkg_call_first($what, [
                ['MikoPBX\Core\Asterisk\Configs\SIPConf', 'reload'],
                ['MikoPBX\Core\System\PBX', 'sipReload'],
            ]);
            return;
        case 'manager':
            featpkg_call_first($what, [
                ['MikoPBX\Core\Asterisk\Configs\ManagerConf', 'reload'],
                ['MikoPBX\Core\System\PBX', 'managerReload'],
            ]);
            return;
        case 'cron':
            $class = 'MikoPBX\Core\System\Configs\CronConf';
            if (!class_exists($class)) {
                throw new RuntimeException("no MikoPBX reload method for cron ($class is missing)");
            }
            (new $class())->reStart();
            return;
        case 'modules':
            $class = 'MikoPBX\Core\Asterisk\Configs\ModulesConf';
            if (!class_exists($class)) {
                throw new RuntimeException("no MikoPBX generator for modules.conf ($class is missing)");
            }
            (new $class())->generateConfig();
            return;
    }
    throw new RuntimeException("unknown reload $what");
}

/** "no", or "yes: <why>": whether SIPConf::reload() would restart Asterisk now. */
function featpkg_pjsip_would_restart(): string
{
    $class = 'MikoPBX\Core\Asterisk\Configs\SIPConf';
    if (!class_exists($class) || !method_exists($class, 'needAsteriskRestart')) {
        // Releases without the check reload PJSIP without restarting.
        return 'no';
    }
    if ((new $class())->needAsteriskRestart()) {
        return 'yes: the network settings changed since Asterisk started (SIPConf::needAsteriskRestart), so SIPConf::reload() restarts Asterisk';
    }
    return 'no';
}

$words = array_slice($argv, 1);
if (($words[0] ?? '') === '--would-restart') {
    if (array_slice($words, 1) !== ['pjsip']) {
        fwrite(STDERR, "usage: php -f featpkg-reload.php -- --would-restart pjsip\n");
        exit(2);
    }
    require_once 'Globals.php';
    try {
        echo featpkg_pjsip_would_restart(), "\n";
    } catch (Throwable $e) {
        fwrite(STDERR, 'featpkg-reload: cannot tell whether a PJSIP reload restarts Asterisk: ' . $e->getMessage() . "\n");
        exit(1);
    }
    exit(0);
}
if ($words === []) {
    fwrite(STDERR, 'usage: php -f featpkg-reload.php <' . implode('|', FEATPKG_RELOADS) . ">...\n");
    exit(2);
}
foreach ($words as $word) {
    if (!in_array($word, FEATPKG_RELOADS, true)) {
        fwrite(STDERR, "featpkg-reload: unknown reload \"$word\" (known: " . implode(' ', FEATPKG_RELOADS) . ")\n");
        exit(2);
    }
}

require_once 'Globals.php';

// In FEATPKG_RELOADS order: each once, pjsip (which may restart Asterisk) last.
foreach (array_values(array_intersect(FEATPKG_RELOADS, $words)) as $what) {
    try {
        featpkg_reload($what);
    } catch (Throwable $e) {
        fwrite(STDERR, "featpkg-reload: $what failed: " . $e->getMessage() . "\n");
        exit(1);
    }
}
exit(0);
