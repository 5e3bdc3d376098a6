<?php
/*
 * One step of a MikoPBX module's life, done by MikoPBX Core's own classes
 * (the release's src/), for tests/mikopbx_lifecycle.rs. Prints one JSON object:
 *   {"success": bool, "messages": ..., "module": <m_PbxExtensionModules row or null>}
 *
 *   php lifecycle.php migrate [Model..] MikoPBX's first-boot table migration
 *   php lifecycle.php boot              MikoPBX starts: every config it generates
 *                                       is written (ModulesConf: the release's
 *                                       generator with the modules' hooks)
 *   php lifecycle.php install <zip>     upload on the module page (new or upgrade)
 *   php lifecycle.php enable            EnableModuleAction::enableModule
 *   php lifecycle.php disable           DisableModuleAction::disableModule
 *   php lifecycle.php reload-state      WorkerModelsEvents' ReloadModuleStateAction
 *                                       for the module's row, a few seconds later
 *   php lifecycle.php modules-conf      ModulesConf regenerates modules.conf
 *   php lifecycle.php uninstall         "Delete" on the module page
 *
 * `install` is ModuleInstallationBase's sequence (startModuleInstallation,
 * then the WorkerModuleInstaller process, then postInstallModule) with one
 * change: MikoPBX starts the worker as a background process and polls it, the
 * harness calls the worker's start() and then postInstallModule() in turn.
 */

use MikoPBX\Common\Models\PbxExtensionModules;
use MikoPBX\Common\Models\PbxSettings;
use MikoPBX\Common\Providers\PBXConfModulesProvider;
use MikoPBX\Core\Asterisk\Configs\ExtensionsConf;
use MikoPBX\Core\Asterisk\Configs\ManagerConf;
use MikoPBX\Core\Asterisk\Configs\ModulesConf;
use MikoPBX\Core\Asterisk\Configs\SIPConf;
use MikoPBX\Core\System\Configs\CronConf;
use MikoPBX\Core\Workers\Libs\WorkerModelsEvents\Actions\ReloadModuleStateAction;
use MikoPBX\Modules\PbxExtensionUtils;
use MikoPBX\PBXCoreREST\Lib\Modules\DisableModuleAction;
use MikoPBX\PBXCoreREST\Lib\Modules\EnableModuleAction;
use MikoPBX\PBXCoreREST\Lib\Modules\GetMetadataFromModulePackageAction;
use MikoPBX\PBXCoreREST\Lib\Modules\ModuleInstallationBase;
use MikoPBX\PBXCoreREST\Lib\Modules\UninstallModuleAction;
use MikoPBX\PBXCoreREST\Workers\WorkerModuleInstaller;

require __DIR__ . '/harness.php';
FeatpkgHarness\boot();

const MODULE = 'ModuleFeatpkg';

function module_row(): ?array
{
    $row = PbxExtensionModules::findFirstByUniqid(MODULE);
    return $row === null ? null : $row->toArray();
}

function result(bool $success, $messages): array
{
    return ['success' => $success, 'messages' => $messages];
}

function boot_pbx(): array
{
    PbxSettings::setValueByKey(PbxSettings::PBX_VERSION, FeatpkgHarness\settings()['pbx_version']);
    (new ExtensionsConf())->generateConfig();
    (new ManagerConf())->generateConfig();
    (new SIPConf())->generateConfig();
    (new CronConf())->reStart();
    (new ModulesConf())->generateConfig();
    return result(true, []);
}

function install(string $zip): array
{
    // ModuleInstallationBase::startModuleInstallation (ModuleInstallationBase.php:171-250).
    $meta = GetMetadataFromModulePackageAction::main($zip);
    if (!$meta->success) {
        return result(false, $meta->messages);
    }
    $id = $meta->data['uniqid'];
    $moduleWasEnabled = false;
    if (PbxExtensionUtils::isEnabled($id)) {
        $res = DisableModuleAction::disableModule($id);
        if (!$res->success) {
            return result(false, $res->messages);
        }
        $moduleWasEnabled = true;
    }
    $currentModuleDir = PbxExtensionUtils::getModuleDir($id);
    if (is_dir($currentModuleDir)) {
        $res = (new UninstallModuleAction('', $id, true))->uninstallModule();
        if (!$res->success) {
            return result(false, $res->messages);
        }
    }
    $temp = dirname($zip);
    $settingsFile = "$temp/install_settings.json";
    file_put_contents($settingsFile, json_encode([
        'filePath' => $zip,
        'currentModuleDir' => $currentModuleDir,
        'uniqid' => $id,
        ModuleInstallationBase::MODULE_WAS_ENABLED => $moduleWasEnabled,
        'asyncChannelId' => '',
    ], JSON_UNESCAPED_SLASHES | JSON_PRETTY_PRINT));
    $redis = Phalcon\Di\Di::getDefault()->getShared('redis');
    $redis->setex(ModuleInstallationBase::REDIS_MODULE_INSTALLATION_KEY . $id, 1800, json_encode([
        'uniqid' => $id,
        ModuleInstallationBase::MODULE_WAS_ENABLED => $moduleWasEnabled,
        'asyncChannelId' => '',
        'filePath' => $zip,
        'status' => 'preinstalled',
    ]));

    // The worker process (WorkerModuleInstaller.php:54-200): unzip, installModule().
    $worker = (new ReflectionClass(WorkerModuleInstaller::class))->newInstanceWithoutConstructor();
    $worker->start(['WorkerModuleInstaller', 'start', $settingsFile]);
    $error = trim((string) @file_get_contents("$temp/installation_error"));
    if ($error !== '') {
        return result(false, [$error]);
    }

    // After the worker restart: postInstallModule() enables a module that was enabled.
    $installer = new ModuleInstallationBase('', $id);
    $installer->postInstallModule($id, json_decode($redis->get(ModuleInstallationBase::REDIS_MODULE_INSTALLATION_KEY . $id), true));
    $row = module_row();
    return result($row !== null && (!$moduleWasEnabled || $row['disabled'] === '0'), [
        'moduleWasEnabled' => $moduleWasEnabled,
        'events' => FeatpkgHarness\settings()['var'] . '/event-bus.log',
    ]);
}

/**
 * MikoPBX's first-boot migration of the tables featpkg and the module life
 * cycle touch: each table takes its model's columns as the model's
 * annotations declare them (`@Column(type="integer"|"string")`, `@Identity`,
 * `@Primary`), keeping its rows. The release does this with
 * UpdateDatabase::createUpdateDbTableByAnnotations(), which needs Phalcon's
 * annotations parser; this is the same rule over the same annotations, read
 * with PHP's reflection. On the shipped database it turns
 * m_CustomFiles.changed from INTEGER into TEXT and adds
 * m_PbxExtensionModules' disableReason columns, m_Codecs.disabled, ...
 */
function migrate(array $models): array
{
    $pdo = Phalcon\Di\Di::getDefault()->getShared('db')->pdo();
    $changed = [];
    foreach ($models ?: ['CustomFiles', 'PbxExtensionModules', 'PbxSettings', 'Codecs', 'Sip'] as $model) {
        $class = "MikoPBX\\Common\\Models\\$model";
        $table = (new $class())->getSource();
        $want = [];
        foreach ((new ReflectionClass($class))->getProperties(ReflectionProperty::IS_PUBLIC) as $property) {
            $doc = (string) $property->getDocComment();
            if ($property->isStatic() || !preg_match('/@Column\(type="(\w+)"/', $doc, $m)) {
                continue;
            }
            $type = $m[1] === 'integer' ? 'INTEGER' : 'TEXT';
            if (str_contains($doc, '@Identity')) {
                $type = 'INTEGER PRIMARY KEY AUTOINCREMENT';
            } elseif (str_contains($doc, '@Primary')) {
                $type .= ' PRIMARY KEY';
            }
            $want[$property->getName()] = $type;
        }
        $have = [];
        foreach ($pdo->query("PRAGMA table_info(\"$table\")") as $column) {
            $have[$column['name']] = strtoupper($column['type']);
        }
        $same = array_keys($want) == array_keys($have);
        foreach ($want as $name => $type) {
            $same = $same && isset($have[$name]) && str_starts_with($type, $have[$name]);
        }
        if ($same) {
            continue;
        }
        $common = implode(', ', array_map(static fn($c) => "\"$c\"", array_intersect(array_keys($want), array_keys($have))));
        $columns = implode(', ', array_map(static fn($c, $t) => "\"$c\" $t", array_keys($want), $want));
        $pdo->exec("CREATE TABLE \"{$table}_new\" ($columns)");
        $pdo->exec("INSERT INTO \"{$table}_new\" ($common) SELECT $common FROM \"$table\"");
        $pdo->exec("DROP TABLE \"$table\"");
        $pdo->exec("ALTER TABLE \"{$table}_new\" RENAME TO \"$table\"");
        $changed[] = $table;
    }
    return result(true, $changed);
}

$command = $argv[1] ?? '';
try {
    switch ($command) {
        case 'migrate':
            $out = migrate(array_slice($argv, 2));
            break;
        case 'boot':
            $out = boot_pbx();
            break;
        case 'install':
            $out = install($argv[2] ?? '');
            break;
        case 'enable':
            $res = EnableModuleAction::enableModule(MODULE);
            $out = result($res->success, $res->success ? $res->data : $res->messages);
            break;
        case 'disable':
            $res = DisableModuleAction::disableModule(MODULE);
            $out = result($res->success, $res->success ? $res->data : $res->messages);
            break;
        case 'reload-state':
            // ReloadModuleStateAction::executeReloder for the module's row
            // (ReloadModuleStateAction.php:47-62): the Conf class's hooks again.
            PBXConfModulesProvider::recreateModulesProvider();
            $row = module_row();
            $conf = 'Modules\\' . MODULE . '\\Lib\\' . str_replace('Module', '', MODULE) . 'Conf';
            (new ReloadModuleStateAction())->handleModuleConfigChanges(new $conf(), $row);
            $out = result(true, []);
            break;
        case 'modules-conf':
            (new ModulesConf())->generateConfig();
            $out = result(true, []);
            break;
        case 'uninstall':
            $res = (new UninstallModuleAction('', MODULE, false))->uninstallModule();
            $out = result($res->success, $res->messages);
            break;
        default:
            fwrite(STDERR, "usage: php lifecycle.php boot|install <zip>|enable|disable|reload-state|modules-conf|uninstall\n");
            exit(2);
    }
} catch (Throwable $e) {
    $out = result(false, ['exception' => get_class($e) . ': ' . $e->getMessage() . ' at ' . $e->getFile() . ':' . $e->getLine()]);
}
$out['module'] = module_row();
echo json_encode($out, JSON_UNESCAPED_SLASHES), "\n";
