<?php
/*
 * MikoPBX reload entry point featpkg calls back after it changed MikoPBX's
 * configuration (default --reload-cmd of the mikopbx target):
 *
 *     /usr/bin/php -f <moduleDir>/bin/featpkg-reload.php <what…>
 *
 * <what> are words among: dialplan pjsip manager cron restart. Each is done
 * with MikoPBX's own mechanism (the ones its WorkerModelsEvents reload actions
 * call), so MikoPBX regenerates the files from its database and custom files:
 *   dialplan  ExtensionsConf::reload()        (older releases: PBX::dialplanReload())
 *   pjsip     SIPConf::reload()               (PBX::sipReload())
 *   manager   ManagerConf::reload()           (PBX::managerReload())
 *   cron      (new CronConf())->reStart()
 *   restart   ModulesConf::reload(): regenerates modules.conf and restarts Asterisk
 *             (always done last)
 * Exit 0 when every one ran, 1 with the message on stderr when one failed,
 * 2 for a usage error.
 */

declare(strict_types=1);

const FEATPKG_RELOADS = ['dialplan', 'pjsip', 'manager', 'cron', 'restart'];

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
        case 'restart':
            $result = featpkg_call_first($what, [
                ['MikoPBX\Core\Asterisk\Configs\ModulesConf', 'reload'],
                ['MikoPBX\Core\System\PBX', 'modulesReload'],
            ]);
            if (is_array($result) && isset($result['result']) && $result['result'] !== 'Success') {
                throw new RuntimeException('ModulesConf::reload() answered ' . json_encode($result));
            }
            return;
    }
    throw new RuntimeException("unknown reload $what");
}

$words = array_slice($argv, 1);
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

// In FEATPKG_RELOADS order: each once, the Asterisk restart last.
foreach (array_values(array_intersect(FEATPKG_RELOADS, $words)) as $what) {
    try {
        featpkg_reload($what);
    } catch (Throwable $e) {
        fwrite(STDERR, "featpkg-reload: $what failed: " . $e->getMessage() . "\n");
        exit(1);
    }
}
exit(0);
